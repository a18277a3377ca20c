"""Stage 3, Tencent's API: sign a request, send it, and turn the exchange into one outcome."""
