# The Odoo face of the Plane connector: configuration defaults and documentation.
# It talks to nobody: every Plane call goes through the Rust crates (plane-core,
# plane-server); see README.md. `cargo xtask validate` checks that the defaults in
# data/ir_config_parameter.xml equal plane-core's and that no HTTP client appears here.
{
    "name": "Plane Connector",
    "summary": "Plane (project management) connection defaults for the plane-connector service",
    "version": "18.0.1.0.0",
    "category": "Productivity/Project",
    "author": "InsightPulseAI",
    "website": "https://github.com/insightpulseai/plane-connector",
    "license": "Other OSI approved licence",
    "depends": ["base"],
    "data": [
        "data/ir_config_parameter.xml",
    ],
    "installable": True,
    "application": False,
}
