"""The Kubernetes side of the plugin: the only package that imports the kubernetes client."""
