"""Training the agent: episodes, the actor-critic update, the trainer generator, its saved
state, run setup, validation (model and minimum-size selection) and distributed workers."""
