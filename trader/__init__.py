"""The command line (`bin/trader`), above the service, the control plane and the backtest."""
