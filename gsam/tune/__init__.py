"""`gsam tune`: the serving configuration that meets a p99 target on the user's own mix of image sizes,
found by measuring candidates on the real `gsam serve`."""
