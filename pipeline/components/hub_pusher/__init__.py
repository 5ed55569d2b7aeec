"""HubPusher: publishes blessed models as versioned TF Hub modules with a model card."""
