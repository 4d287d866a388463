"""The domain: integrations, device events and the activity log, with Mender's rules and wire shapes."""
