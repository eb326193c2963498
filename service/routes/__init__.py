"""HTTP route families; each is thin glue over `service.core.DataPlane`."""
