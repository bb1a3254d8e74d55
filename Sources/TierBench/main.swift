print("tierbench: not yet")
