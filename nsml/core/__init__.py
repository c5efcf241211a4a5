"""Pure domain of NSML: entities, states, names, resources and errors. Standard library only."""
