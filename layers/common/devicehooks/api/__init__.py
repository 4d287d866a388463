"""HTTP APIs: routes (powertools resolvers) over the services."""
