"""Running experiments: one trial's stages in order (`trial`), the jobs a worker runs
(`jobs`), their scheduling on Ray Tune (`scheduling`) and the summary a sweep prints."""
