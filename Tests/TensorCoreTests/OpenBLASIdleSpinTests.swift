import Foundation
import Testing
@testable import TensorCore

@Suite("OpenBLAS idle spin")
struct OpenBLASIdleSpinTests {
    @Test("Unset, the spin is shortened; a user's value, even an empty correction, decides otherwise")
    func decision() {
        #expect(OpenBLASIdleSpin.exponentToSet(userValue: nil, correction: nil) == OpenBLASIdleSpin.shortenedExponent)
        #expect(OpenBLASIdleSpin.exponentToSet(userValue: "", correction: nil) == OpenBLASIdleSpin.shortenedExponent)
        #expect(OpenBLASIdleSpin.exponentToSet(userValue: "28", correction: nil) == nil)
        #expect(OpenBLASIdleSpin.exponentToSet(userValue: "4", correction: "1") == nil)
        #expect(OpenBLASIdleSpin.exponentToSet(userValue: nil, correction: "0") == nil)
        #expect(OpenBLASIdleSpin.exponentToSet(userValue: nil, correction: "1") == OpenBLASIdleSpin.shortenedExponent)
    }

    @Test("After a GEMM, OpenBLAS's threads run with the decided spin, and GEMMs still agree with a plain sum")
    func appliedBeforeTheFirstGEMM() {
        var a = [Float](repeating: 0, count: 64 * 64), b = a, c = a
        for i in a.indices { a[i] = Float(i % 7) - 3; b[i] = Float(i % 5) - 2 }
        BLAS.gemm(.none, .none, m: 64, n: 64, k: 64, a: a, lda: 64, b: b, ldb: 64, c: &c, ldc: 64)
        var expected: Float = 0
        for k in 0..<64 { expected += a[5 * 64 + k] * b[k * 64 + 9] }
        #expect(c[5 * 64 + 9] == expected)
        let user = ProcessInfo.processInfo.environment[OpenBLASIdleSpin.variable]
        let correction = ProcessInfo.processInfo.environment[OpenBLASIdleSpin.correctionVariable]
        if let exponent = OpenBLASIdleSpin.exponentToSet(userValue: user, correction: correction) {
            #expect(OpenBLASIdleSpin.currentExponent == exponent)
        } else if let user, let value = Int(user) {
            #expect(OpenBLASIdleSpin.currentExponent == value)
        }
    }
}
