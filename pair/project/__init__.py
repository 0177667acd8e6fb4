"""Adding pair to a project's container configuration (`pair spaces init`): devcontainer.json and
Devfiles, edited in place with comments and formatting kept."""
