"""Jumpstarter TFTP driver that runs tftplab's server (`tftplab serve`)."""
