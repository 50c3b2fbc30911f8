"""The ROS 2 shell: everything that touches rclpy or messages. May import every other layer.

``node`` composes ``params`` (declare, describe, validate, apply), ``inputs`` (subscriptions, pairing,
decoding with ``image_codec`` and ``compressed``, camera_info, registration set-up), ``outputs``
(message building in ``messages``, the publisher thread), ``map_io`` (TF poses via ``tf_listener`` /
``tf_buffer``, map topics and services) and ``diagnostics``. ``topics`` names every topic, ``sync``
pairs stamps and hands over the newest item between threads.
"""
