"""HTTP route families; each is thin glue over `service.dataplane.plane.DataPlane`."""
