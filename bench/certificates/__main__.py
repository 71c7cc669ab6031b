from bench.certificates.run import main

main()
