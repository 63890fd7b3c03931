from kubectl_pytrace.cli import main

if __name__ == "__main__":
    main()
