"""`keras-fip bench`: continual-learning methods × streams × seeds."""
