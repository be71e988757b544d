"""learnact.envs"""
