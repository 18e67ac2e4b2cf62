"""QoS of the node's topics: defaults chosen here, each overridable with the standard ROS 2 QoS parameters.

Every camera, camera-info and output topic is created with rclpy's QoSOverridingOptions, so a params file (or
``-p``) can set ``qos_overrides.<topic>.subscription.<policy>`` for an input and
``qos_overrides.<topic>.publisher.<policy>`` for an output, for the policies in OVERRIDABLE, without a code
change. The topic is the fully resolved name (``/CAM_FRONT/image_rect_compressed``, ``/gsdocc/occupancy``).
"""

from __future__ import annotations

import copy

from rclpy.qos import QoSPolicyKind, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions


def camera_qos() -> QoSProfile:
    """Images and CameraInfo: sensor data (best effort, keep last 5, volatile). A best-effort subscription also
    receives a reliable publisher; override to reliable for lossless delivery, or to transient_local durability for
    a latched CameraInfo. A new object per topic: rclpy writes the overrides into the profile it is given."""
    return copy.copy(qos_profile_sensor_data)


def output_qos() -> QoSProfile:
    """Grid, markers and points: reliable (RViz and recorders ask for it), newest only; a new object per topic."""
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)

OVERRIDABLE: tuple[QoSPolicyKind, ...] = (QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY,
                                          QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH)
"""The policies a user may override per topic."""


def overridable() -> QoSOverridingOptions:
    """The overriding options every topic of the node is created with (read-only QoS parameters)."""
    return QoSOverridingOptions(OVERRIDABLE)
