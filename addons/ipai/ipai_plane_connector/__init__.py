# No Python models: the addon only installs configuration defaults
# (data/ir_config_parameter.xml). The connector itself is the Rust workspace.
