"""Tools that train and evaluate for a measurement: throughput, a step profile, the entropy floor."""
