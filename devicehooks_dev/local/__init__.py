"""The local stack: the real handlers against moto's server, resources read from template.yaml."""
