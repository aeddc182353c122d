"""The runtime a gateway embeds: load a verified router folder and route queries."""
