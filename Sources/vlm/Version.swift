/// The version `vlm --version` prints.
let vlmVersion = "0.1.0"
