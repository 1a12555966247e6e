// Placeholder until the Layers target lands.
