// Placeholder until the Checkpoint target lands.
