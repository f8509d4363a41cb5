"""RTMP ingest: glasses (Mentra Live in unmanaged mode, or any RTMP encoder) publish H.264 and
AAC to `rtmp://host/<app>/<stream-key>`, and each publish is recorded as a session folder."""
