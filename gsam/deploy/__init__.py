"""Everything that turns a trained model into something deployed: the deploy folder (`gsam deploy`,
folder.py), the Triton repository builder (triton/), Kubernetes and KServe manifests (k8s/) and the
serving container (container/)."""
