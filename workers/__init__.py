"""arq worker: the job functions and their settings. Thin: the work is done in engine/."""
