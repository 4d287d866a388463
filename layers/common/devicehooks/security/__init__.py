"""Who may call, where webhooks may go, and how their secrets are kept."""
