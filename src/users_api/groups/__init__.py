"""Groups of users: the admin REST API and the service SCIM's Groups build on."""
