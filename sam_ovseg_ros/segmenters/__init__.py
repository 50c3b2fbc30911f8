"""Instance segmenters: ``sam`` (Segment Anything), ``sam2`` (SAM 2.1) and ``sam3`` (SAM 3, text prompts),
each with its checkpoint loading and tiny random-weight profile, and ``generator``, the automatic mask
generator SAM and SAM 2 share. Imports ``core`` only.
"""
