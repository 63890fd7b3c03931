"""Printing what a trace produces exactly as bpftrace does: the value model (values.py), raw
kernel bytes decoded with the compiler's layouts (decode.py, maps.py), printf formatting at run
time (printf.py) and the text/JSON printers (printer.py)."""
