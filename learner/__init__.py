"""learnact.learner"""
