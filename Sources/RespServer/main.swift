print("tierproxy")
