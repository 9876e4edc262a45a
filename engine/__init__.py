"""hookrules: webhook-driven automation rules for ServiceDesk Plus Cloud and Zoho Projects."""
