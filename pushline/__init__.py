"""Pushline: a Kafka-native push-notification delivery pipeline.

This package holds the command line, configuration, the exception hierarchy and the embedded
development stack (broker, schema registry and provider emulators). It imports nothing heavy at
import time, so ``import pushline.errors`` stays cheap for every other layer.
"""

__version__ = "0.1.0"
