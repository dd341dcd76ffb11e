"""Incidents to send (conversion anomalies, a stalled stream), their messages and the record of
what was sent (`incidents`)."""
