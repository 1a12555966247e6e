import Checkpoint
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// On Ctrl-C, `kill` or a closed terminal, removes the temporary files and folders this run was
/// writing (see ``PendingTemporaries``), then dies of the same signal, so nothing half-written is
/// left behind and the caller still sees the interruption.
enum InterruptCleanup {
    private static var sources: [DispatchSourceSignal] = []
    /// Called with the signal before the temporaries are removed (e.g. a rank saying why it stops).
    nonisolated(unsafe) static var onSignal: ((Int32) -> Void)? = nil
    /// A command that stops gracefully on a signal (``InterruptFlag``) takes it here instead: when
    /// this returns true the process goes on. Every signal arrives through these sources; a C
    /// handler installed beside them would get only some, depending on the thread the kernel picks.
    nonisolated(unsafe) static var gracefulStop: ((Int32) -> Bool)? = nil

    static func install() {
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                if let gracefulStop, gracefulStop(signalNumber) { return }
                onSignal?(signalNumber)
                PendingTemporaries.removeAll()
                signal(signalNumber, SIG_DFL)
                kill(getpid(), signalNumber)
            }
            source.resume()
            sources.append(source)
        }
    }
}
