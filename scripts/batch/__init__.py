"""Batch runs of an API workflow over many clips, cut into chunks, on one embedded ComfyUI or on Ray workers.

``plan`` pairs inputs and cuts clips into (clip, frame range) tasks; ``workflow`` points a workflow at one sub-clip
and its lossless sink; ``cut`` writes sub-clips and the final video; ``worker`` runs tasks in a headless ComfyUI;
``pool`` runs workers in this process or on Ray; ``manifest`` records finished work; ``run`` is the command line.
"""
