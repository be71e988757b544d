"""learnact.actions"""
