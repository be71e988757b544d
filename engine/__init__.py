"""learnact.engine"""
