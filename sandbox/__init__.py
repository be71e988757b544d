"""learnact.sandbox"""
