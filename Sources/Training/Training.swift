// The Training target: datasets and batching (Data/), the trainer loop, stages and the pipeline
// runner. Metrics come out as events; the library never prints.
