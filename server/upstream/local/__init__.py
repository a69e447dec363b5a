"""Kind `local`: the embedded model, run in this process."""
