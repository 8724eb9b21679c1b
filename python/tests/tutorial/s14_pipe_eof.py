from multiprocessing import Process, Pipe
def f(parent_conn,child_conn):
    # Commented out in the seed's listing, whose comment says EOFError comes only with it.
    parent_conn.close()
    while True:
        try:
            print(child_conn.recv())
        except EOFError:
            child_conn.close()
            break
if __name__ == '__main__':
    parent_conn, child_conn = Pipe()
    p = Process(target=f, args=(parent_conn,child_conn,))
    p.start()
    child_conn.close()
    parent_conn.send('hello')
    parent_conn.close()
    p.join()
