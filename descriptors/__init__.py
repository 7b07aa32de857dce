"""Descriptor plug-ins: every module here declares a module-level ``DESCRIPTORS`` list."""
