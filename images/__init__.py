"""learnact.images"""
