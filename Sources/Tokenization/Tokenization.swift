// Placeholder until the Tokenization target lands.
