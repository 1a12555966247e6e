// Placeholder until the Media target lands.
