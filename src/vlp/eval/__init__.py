"""Downstream metrics: VQA accuracy, retrieval recall, box IoU and classification scores.

Each metric follows the published evaluation script of its benchmark where there is one
(VQA v2, NLVR2), so numbers here can be compared with numbers in papers.
"""
