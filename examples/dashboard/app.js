<!-- placeholder: written by the dashboard work -->
