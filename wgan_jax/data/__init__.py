"""Input pipelines. Toy 2-D sets are sampled on device (`toy`)."""
