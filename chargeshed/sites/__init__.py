"""Sites, buildings, sheds and ports; port codes and QR images."""
